"""The GSMA IoT SAFE (IoT.05) card stack: TLVs, status words, APDUs, a client, an emulator.

Layering inside this package, each module with one job:

- :mod:`.tlv`: the simple-tag BER-length TLV codec the applet speaks;
- :mod:`.status`: status words (the :class:`~.status.SW` enum) and the named errors they become;
- :mod:`.apdu`: byte-exact command builders and response parsers;
- :mod:`.transport`: what any link to a card (in-process, PC/SC, modem) must offer;
- :mod:`.client`: the applet client (GET RESPONSE, 6Cxx, CLA and session quirks, APDU trace);
- :mod:`.emulator`: a Python IoT SAFE applet timed from a card profile (quirks typed in
  :mod:`.emulator.quirks`, profiles written back by :mod:`.emulator.profile_toml`);
- :mod:`.iotsafe_spec`: ``iotsafe:`` token specs, one checked rule per attribute;
- :mod:`.iotsafe_token`: the :class:`drivers.tokens.base.Token` over the client;
- :mod:`.fit`: a card profile fitted from recorded runs (:mod:`.fit_stats` computes,
  :mod:`.fit_prose` explains).

Nothing here imports Textual or Rich (see DESIGN.md).
"""

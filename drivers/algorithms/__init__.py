"""Signature algorithms beyond the SIM's P-256, post-quantum ones included (issue 14 part 3).

One module per job:

- :mod:`.registry` -- the algorithms, their key and signature sizes (from the standards) and
  the library that implements each in software here;
- :mod:`.software` -- a software signer/verifier per algorithm (maintained libraries only);
- :mod:`.measure` -- sign/verify times measured on this machine;
- :mod:`.card_model` -- what one signature costs on an IoT SAFE card: on-card compute (a
  profile parameter with its source), the link cost of moving the signature out (GET RESPONSE
  chaining versus extended length) and whether it fits the card's RAM;
- :mod:`.card_sign` -- a real PQC signature made by the emulated card over chained APDUs;
- :mod:`.handshake` -- certificate-chain bytes with PQC keys and DTLS fragmentation over a
  link (a labelled model: the system OpenSSL 3.0 has no PQC, so no PQC inside a real TLS);
- :mod:`.solver` -- how fast the card must sign (or the link be) for a pattern's P99 budget.
"""

from drivers.algorithms.registry import ALGORITHMS, Algorithm, get_algorithm

__all__ = ["ALGORITHMS", "Algorithm", "get_algorithm"]

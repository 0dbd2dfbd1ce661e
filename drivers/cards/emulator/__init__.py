"""An emulated IoT SAFE card: the applet, its provisioned objects, its timing profile.

Typical use::

    from drivers.cards.emulator import IoTSafeApplet, InProcessTransport, load_profile
    from drivers.cards.emulator import provision_lab_card

    applet = IoTSafeApplet(provision_lab_card(), load_profile("paper-sim"), speed=0.01)
    transport = InProcessTransport(applet)
"""

from drivers.cards.emulator.applet import IoTSafeApplet, SampledDelay
from drivers.cards.emulator.delay import Delay, PreciseDelay, RecordingDelay
from drivers.cards.emulator.profile import (
    INSTANT,
    CardProfile,
    Dist,
    list_profiles,
    load_profile,
    parse_profile,
)
from drivers.cards.emulator.quirks import QUIRK_DEFAULTS, Quirks
from drivers.cards.emulator.store import CardStore, provision_lab_card, shared_card
from drivers.cards.emulator.transport import InProcessTransport

__all__ = [
    "INSTANT",
    "QUIRK_DEFAULTS",
    "CardProfile",
    "CardStore",
    "Delay",
    "Dist",
    "InProcessTransport",
    "IoTSafeApplet",
    "PreciseDelay",
    "Quirks",
    "RecordingDelay",
    "SampledDelay",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "provision_lab_card",
    "shared_card",
]

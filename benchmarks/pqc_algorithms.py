"""Signature algorithms, PQC included: sizes, software times measured here, the card model.

Prints (and writes benchmarks/results/pqc_algorithms.json):

1. per algorithm: public key and signature bytes, software sign/verify P50/P90 measured on this
   machine with the installed libraries (n calls; SLH-DSA-128s: 3), and whether every
   signature verified;
2. per PQC algorithm on the emulated card (profile ``pqc-sim``): a real signature made by the
   card, fetched by GET RESPONSE chaining and by one extended-length APDU -- APDUs, bytes,
   modelled card and link time -- or the card's refusal (RAM);
3. the DTLS 1.2 client certificate flight per algorithm over a link (a model).

Run: ``.venv/bin/python benchmarks/pqc_algorithms.py [--n 50] [--link nb-iot]`` (about a
minute: SLH-DSA-128s signs in ~1 s a time here). Exits 1 if a signature failed to verify or a
size disagrees with its standard.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--profile", default="pqc-sim")
    parser.add_argument("--link", default="lte-m")
    args = parser.parse_args()

    from drivers.algorithms.card_sign import sign_on_card
    from drivers.algorithms.registry import ALGORITHMS
    from drivers.algorithms.report import algorithms_report
    from drivers.errors import SafeLabError

    doc = algorithms_report(n=args.n, profile=args.profile, link=args.link)
    ok = True
    print(f"host: {doc['host']}")
    print(
        f"{'algorithm':14} {'pk B':>6} {'sig B':>6} {'sign P50':>9} {'P90':>8} "
        f"{'verify P50':>10} {'ok':>3}  library"
    )
    for row in doc["algorithms"]:
        sw = row["software"]
        good = sw["verified"] and (
            sw["signature_bytes"] == row["signature_bytes"]
            or (row["algorithm"] in ("p256", "bp256") and sw["signature_bytes"] <= 72)
        )
        ok &= good
        print(
            f"{row['algorithm']:14} {row['public_key_bytes']:>6} {row['signature_bytes']:>6} "
            f"{sw['sign_p50_ms']:>9.3f} {sw['sign_p90_ms']:>8.3f} {sw['verify_p50_ms']:>10.3f} "
            f"{'yes' if good else 'NO':>3}  {sw['library']} (n={sw['n_sign']})"
        )
    card_rows = []
    print(f"\non the emulated card ({args.profile}): real signature, T=0 chaining vs extended")
    for name, alg in ALGORITHMS.items():
        if not alg.post_quantum:
            continue
        try:
            chained = sign_on_card(name, args.profile)
            extended = sign_on_card(name, args.profile, extended=True)
        except SafeLabError as exc:
            print(f"  {name:14} refused: {exc.one_line()}")
            card_rows.append({"algorithm": name, "refused": exc.one_line()})
            continue
        ok &= chained.verified and extended.verified
        card_rows.append(
            {"algorithm": name, "chained": chained.as_dict(), "extended": extended.as_dict()}
        )
        print(
            f"  {name:14} card {chained.modelled_card_ms:,.0f} ms; chained "
            f"{chained.sign_apdus} APDUs ({chained.get_responses} GET RESPONSE), link "
            f"{chained.modelled_link_ms:,.0f} ms; extended {extended.sign_apdus} APDUs, link "
            f"{extended.modelled_link_ms:,.0f} ms; verified "
            f"{chained.verified and extended.verified}"
        )
    print(f"\nDTLS 1.2 client certificate flight over {args.link} ({doc['flight']}):")
    for row in doc["algorithms"]:
        f = row["flight"]
        print(
            f"  {row['algorithm']:14} cert {f['certificate_bytes']:>6} B "
            f"({f['certificate_source']}),"
            f" flight {f['flight_bytes']:>6} B in {f['datagrams']:>3} datagrams, "
            f"{(f['serialisation_ms'] or 0):>8,.0f} ms to send, P(lost) {f['p_flight_lost']:.1%}"
        )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "pqc_algorithms.json").write_text(
        json.dumps({"report": doc, "card": card_rows}, indent=2, default=str)
    )
    print("\nall signatures verified, sizes as the standards" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

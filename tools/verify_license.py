"""Verify a licence document offline, with only the issuer's public key.

    python -m tools.verify_license LICENCE.pdf --public-key BASE64   (or --public-key-file FILE)

Checks the identifier's check character, the Ed25519 signature over the signed directory fields
and the validity dates. Revocation cannot be known offline: VerifyLicense at elicense tells.
Exit status 0 when the document verifies, 1 when it does not, 2 when it cannot be read."""
import argparse
import sys

from services.elicense import document, domain


def verify_file(path, public_key_b64, today=None):
    with open(path, "rb") as fh:
        fields = document.read(fh.read())
    return domain.verify(fields, public_key_b64, today=today), fields


def main(argv=None):
    parser = argparse.ArgumentParser(description="verify an onething licence PDF offline")
    parser.add_argument("document")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--public-key", help="the issuer's Ed25519 public key, base64 (ListSigningKeys)")
    key.add_argument("--public-key-file", help="a file holding that base64 key")
    args = parser.parse_args(argv)
    public = args.public_key or open(args.public_key_file).read().strip()
    try:
        (valid, reason), fields = verify_file(args.document, public)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.document}: {exc}", file=sys.stderr)
        return 2
    print(f"{'VALID' if valid else 'NOT VALID'}: {fields.get('license_id')} {fields.get('type_name')} "
          f"holder {fields.get('holder_name')} — {reason}")
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())

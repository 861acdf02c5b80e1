"""Verify a licence document offline, with only the issuer's public key.

    python -m tools.verify_license LICENCE.pdf --public-key BASE64   (or --public-key-file FILE)
    python -m tools.verify_license LICENCE.pdf --from-site HOST:PORT

Checks the identifier's check character, the Ed25519 signature over the signed directory fields
and the validity dates. The key is the one given, or (--from-site) the one the document names,
fetched from that site's elicense with ListSigningKeys: its own keys and the keys of its key
directory (every site's, at the province), never the key the document carries itself. Revocation
cannot be known offline: VerifyLicense (or VerifyLicenseDocument) at the issuing site tells.
Exit status 0 when the document verifies, 1 when it does not (or the site does not know the key),
2 when it cannot be read or the site cannot be asked."""
import argparse
import sys

from services.elicense import document, domain


def verify_file(path, public_key_b64, today=None):
    with open(path, "rb") as fh:
        fields = document.read(fh.read())
    return domain.verify(fields, public_key_b64, today=today), fields


class KeyNotFound(LookupError):
    """The site asked does not know the key that signed the document."""


def key_from_site(address, key_id, issuer_region, timeout=10.0):
    """(public key, site holding it) of `key_id` as the elicense at `address` lists the signing keys
    of `issuer_region` (ListSigningKeys, public). KeyNotFound when it does not list it; a
    grpc.RpcError when it cannot be asked."""
    from onething.elicense.v1 import elicense_pb2 as pb
    from onething.elicense.v1 import elicense_pb2_grpc as pb_grpc
    from services.common.grpc_client import channel
    stub = pb_grpc.ElicenseServiceStub(channel(address))
    keys = stub.ListSigningKeys(pb.ListSigningKeysRequest(region_code=issuer_region), timeout=timeout).keys
    for key in keys:
        if key.key_id == key_id:
            return key.public_key, key.site_region
    raise KeyNotFound(f"{address} lists no signing key {key_id} for region {issuer_region} "
                      f"(it knows {', '.join(k.key_id for k in keys) or 'none'})")


def main(argv=None):
    parser = argparse.ArgumentParser(description="verify an onething licence PDF offline")
    parser.add_argument("document")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--public-key", help="the issuer's Ed25519 public key, base64 (ListSigningKeys)")
    key.add_argument("--public-key-file", help="a file holding that base64 key")
    key.add_argument("--from-site", metavar="HOST:PORT",
                     help="fetch the key the document names from this site's elicense (ListSigningKeys)")
    args = parser.parse_args(argv)
    try:
        with open(args.document, "rb") as fh:
            fields = document.read(fh.read())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.document}: {exc}", file=sys.stderr)
        return 2
    held_by = ""
    if args.from_site:
        import grpc
        try:
            public, site = key_from_site(args.from_site, fields.get("key_id", ""),
                                         (fields.get("issuer_code") or "")[:6])
        except KeyNotFound as exc:
            print(f"NOT VALID: {fields.get('license_id')} — {exc}")
            return 1
        except grpc.RpcError as exc:
            print(f"cannot ask {args.from_site} for the key: {exc.code().name} {exc.details()}", file=sys.stderr)
            return 2
        held_by = f" (key {fields.get('key_id')} of site {site})"
    else:
        try:
            public = args.public_key or open(args.public_key_file).read().strip()
        except OSError as exc:
            print(f"cannot read the key: {exc}", file=sys.stderr)
            return 2
    valid, reason = domain.verify(fields, public)
    print(f"{'VALID' if valid else 'NOT VALID'}: {fields.get('license_id')} {fields.get('type_name')} "
          f"holder {fields.get('holder_name')} — {reason}{held_by}")
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())

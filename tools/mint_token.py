"""Sign a bearer token with the local identity provider's key (made by `make up` in var/auth), for
grpcurl, tools or tests. Prints the token. Local development only: production tokens come from the
region's identity provider, and the production profile refuses this key.

    python -m tools.mint_token --sub 44010619900101123X --role applicant
    python -m tools.mint_token --sub clerk-5 --role clerk --region 440100
    python -m tools.mint_token --sub officer-007 --role officer --department gaj --region 440100
    python -m tools.mint_token --sub op-1 --role operator --region 440100
    grpcurl -plaintext -H "authorization: Bearer $(python -m tools.mint_token ...)" ...
    (a clerk acting for the applicant at the window adds -H "x-on-behalf-of: <ID number>")

    python -m tools.mint_token --rotate-key    a new signing key; the old public key stays trusted
                                               in var/auth/jwks.json until its tokens have expired
"""
import argparse
import sys

from services.common import auth


def main(argv=None):
    parser = argparse.ArgumentParser(description="mint a local bearer token")
    parser.add_argument("--sub", help="citizen ID, credit code, staff ID or service:<name>")
    parser.add_argument("--role", choices=auth.ROLES)
    parser.add_argument("--department", default="")
    parser.add_argument("--region", default="")
    parser.add_argument("--hours", type=float, default=8, help="lifetime (at most ONETHING_AUTH_MAX_TOKEN_SECONDS)")
    parser.add_argument("--rotate-key", action="store_true", help="make a new signing key (old one kept trusted)")
    args = parser.parse_args(argv)
    if args.rotate_key:
        old, new = auth.rotate_keys()
        print(f"signing key {new} (kid); {old} stays trusted in jwks.json until its tokens have expired")
        return 0
    if not args.sub or not args.role:
        parser.error("--sub and --role are required")
    auth.ensure_keys()
    try:
        print(auth.mint(args.sub, args.role, args.department, args.region, args.hours))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

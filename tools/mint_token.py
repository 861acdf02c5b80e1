"""Sign a bearer token with the local identity provider's key (made by `make up`), for grpcurl or
tests. Prints the token.

    python -m tools.mint_token --sub 44010619900101123X --role applicant
    python -m tools.mint_token --sub officer-007 --role officer --department gaj --region 440100
    grpcurl -plaintext -H "authorization: Bearer $(python -m tools.mint_token ...)" ...
"""
import argparse

from services.common import auth


def main(argv=None):
    parser = argparse.ArgumentParser(description="mint a local bearer token")
    parser.add_argument("--sub", required=True, help="citizen ID, credit code or staff ID")
    parser.add_argument("--role", required=True, choices=auth.ROLES)
    parser.add_argument("--department", default="")
    parser.add_argument("--region", default="")
    parser.add_argument("--hours", type=float, default=8)
    args = parser.parse_args(argv)
    auth.ensure_keys()
    print(auth.mint(args.sub, args.role, args.department, args.region, args.hours))


if __name__ == "__main__":
    main()

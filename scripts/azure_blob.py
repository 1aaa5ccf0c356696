#!/usr/bin/env python3
"""Azure Blob Storage of the tests (Azurite), with the standard library only: the well-known
development account devstoreaccount1 and its published key, signed as Shared Key requests.

  azure_blob.py ping --endpoint URL                 the service answers an authenticated listing
  azure_blob.py create-container --endpoint URL --container NAME
                                                    creates it (an existing one is kept)

URL is the blob service without the account (http://127.0.0.1:10000).
"""
import argparse
import base64
import email.utils
import hashlib
import hmac
import sys
import urllib.error
import urllib.request

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: every emulator has it).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def request(endpoint, method, path, query):
    """A Shared Key request for /ACCOUNT/PATH?QUERY; its HTTP status."""
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    canon_query = "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    to_sign = f"{method}\n" + "\n" * 11 + canon_headers + f"/{ACCOUNT}/{ACCOUNT}/{path}" + canon_query
    signature = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
    url = f"{endpoint}/{ACCOUNT}/{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    req = urllib.request.Request(url, method=method, headers={**headers, "Authorization": f"SharedKey {ACCOUNT}:{signature}", "Content-Length": "0"})
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ping", "create-container"])
    p.add_argument("--endpoint", default="http://127.0.0.1:10000")
    p.add_argument("--container", default="datalake")
    a = p.parse_args()
    if a.command == "ping":
        status = request(a.endpoint, "GET", "", {"comp": "list"})
        ok = status == 200
    else:
        status = request(a.endpoint, "PUT", a.container, {"restype": "container"})
        ok = status in (201, 409)  # created, or there already
    print(f"{a.command}: HTTP {status}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Azure Blob Storage of the tests (Azurite), with the standard library only: the well-known
development account devstoreaccount1 and its published key, signed as Shared Key requests.

  azure_blob.py ping --endpoint URL                 the service answers an authenticated listing
  azure_blob.py create-container --endpoint URL --container NAME
                                                    creates it (an existing one is kept)
  azure_blob.py blocks --endpoint URL --container NAME --blob PATH
                                                    JSON: the blob's committed blocks, in order,
                                                    each with its size (a put in one request
                                                    has none)

URL is the blob service without the account (http://127.0.0.1:10000).
"""
import argparse
import base64
import email.utils
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: every emulator has it).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def request(endpoint, method, path, query):
    """A Shared Key request for /ACCOUNT/PATH?QUERY; its HTTP status and body."""
    path = urllib.parse.quote(path, safe="/")
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    canon_query = "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    to_sign = f"{method}\n" + "\n" * 11 + canon_headers + f"/{ACCOUNT}/{ACCOUNT}/{path}" + canon_query
    signature = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
    url = f"{endpoint}/{ACCOUNT}/{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    req = urllib.request.Request(url, method=method, headers={**headers, "Authorization": f"SharedKey {ACCOUNT}:{signature}", "Content-Length": "0"})
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def blocks(endpoint, container, blob):
    """The committed block list of a blob (Get Block List): [{"name", "size"}], in order."""
    status, body = request(endpoint, "GET", f"{container}/{blob}", {"blocklisttype": "committed", "comp": "blocklist"})
    if status != 200:
        sys.exit(f"blocks: HTTP {status}: {body.decode(errors='replace')}")
    committed = ET.fromstring(body).find("CommittedBlocks")
    found = [] if committed is None else committed.findall("Block")
    return [{"name": b.findtext("Name"), "size": int(b.findtext("Size") or 0)} for b in found]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ping", "create-container", "blocks"])
    p.add_argument("--endpoint", default="http://127.0.0.1:10000")
    p.add_argument("--container", default="datalake")
    p.add_argument("--blob", help="path of the blob in the container (blocks)")
    a = p.parse_args()
    if a.command == "blocks":
        json.dump(blocks(a.endpoint, a.container, a.blob), sys.stdout)
        return
    if a.command == "ping":
        status, _ = request(a.endpoint, "GET", "", {"comp": "list"})
        ok = status == 200
    else:
        status, _ = request(a.endpoint, "PUT", a.container, {"restype": "container"})
        ok = status in (201, 409)  # created, or there already
    print(f"{a.command}: HTTP {status}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

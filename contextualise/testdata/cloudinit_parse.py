#!/usr/bin/python3
"""Parse user data with cloud-init's own code and print what it would run.

Usage: cloudinit_parse.py FILE   (FILE holds the base64 user_data Nova gets)

Prints JSON: {"version": ..., "parts": [{"content_type", "filename",
"payload_b64"}], "cloud_config": <merged cloud-config or null>}, or
{"version": ..., "error": ...} when cloud-init's processing of the user data
fails (then no part of it runs at boot).
The parts are what cloudinit.user_data.UserDataProcessor makes of the data,
walked as cloudinit.handlers.walk walks them; the cloud-config is what
cloudinit.handlers.cloud_config.CloudConfigPartHandler merges from them,
each part with its own Merge-Type header, as at boot.
"""
import base64
import json
import sys
import tempfile

from cloudinit import handlers, helpers, util, version
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.user_data import UserDataProcessor


def main():
    with open(sys.argv[1], "rb") as f:
        blob = base64.b64decode(f.read())
    with tempfile.TemporaryDirectory() as tmp:
        paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
        try:
            msg = UserDataProcessor(paths).process(blob)
        except Exception as e:  # cloud-init runs none of the user data
            json.dump({"version": version.version_string(),
                       "error": "%s: %s" % (type(e).__name__, e)}, sys.stdout)
            return
        cc = CloudConfigPartHandler(paths)
        cc.handle_part(None, handlers.CONTENT_START, None, None, None, None)
        parts = []
        merged = None

        def callback(_data, filename, payload, headers):
            nonlocal merged
            ctype = headers["Content-Type"]
            if isinstance(payload, str):
                raw = payload.encode("utf-8", "surrogateescape")
            else:
                raw = payload or b""
            parts.append({
                "content_type": ctype,
                "filename": filename,
                "payload_b64": base64.b64encode(raw).decode(),
            })
            if ctype == "text/cloud-config":
                cc.handle_part(None, ctype, filename, payload, None, headers)
                merged = cc.cloud_buf

        handlers.walk(msg, callback, {})
    json.dump({
        "version": version.version_string(),
        "parts": parts,
        "cloud_config": merged,
    }, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main()

"""``calcdx serve``: calcdx as a DICOM node, a DICOMweb service, and the Orthanc configuration for either."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DICOM_EXAMPLE = """\
example (accept studies from ORTHANC on this machine, send the SR and overlays back to it):
  calcdx serve dicom --aet CALCDX --port 11112 --allow ORTHANC@127.0.0.1 \\
      --dest ORTHANC@127.0.0.1:4242 --spool /var/lib/calcdx/spool --out /var/lib/calcdx/results

then, from another shell (dcmtk):  echoscu -aet ORTHANC -aec CALCDX 127.0.0.1 11112

or with a YAML file holding the same keys (ae_title, host, port, allowed, destination, spool_dir,
out_dir, model_dir, study_idle_seconds, max_associations, max_pdu_bytes, acse_timeout,
dimse_timeout, network_timeout, connection_timeout, send_retries, send_backoff_seconds,
tls_cert, tls_key, tls_ca, log_patient_data); flags override the file:
  calcdx serve dicom --config node.yaml

AE titles are not authentication: outside a trusted network use --tls-cert/--tls-key and
--tls-ca (clients must then present a certificate signed by that CA).
"""

WEB_EXAMPLE = """\
example (token in a file readable only by the service; Orthanc's DICOMweb as a by-reference source):
  openssl rand -hex 32 > /etc/calcdx/token && chmod 600 /etc/calcdx/token
  calcdx serve web --port 8000 --token-file /etc/calcdx/token \\
      --dicomweb-source http://127.0.0.1:8042/dicom-web --work /var/lib/calcdx/web

  curl -H "Authorization: Bearer $(cat /etc/calcdx/token)" \\
       -H 'Content-Type: multipart/related; type="application/dicom"; boundary=B' \\
       --data-binary @upload.multipart http://127.0.0.1:8000/studies
  curl -H "Authorization: Bearer ..." http://127.0.0.1:8000/jobs/<id>

The OpenAPI document is at /openapi.json (interactive: /docs).  YAML keys: host, port, token,
token_file, work_dir, model_dir, max_upload_bytes, max_instances, dicomweb_sources,
dicomweb_token, request_timeout.
"""

ORTHANC_EXAMPLE = """\
examples:
  calcdx serve orthanc-config --mode lua --out /etc/orthanc/calcdx      # Orthanc -> calcdx serve dicom
  calcdx serve orthanc-config --mode python --out /etc/orthanc/calcdx \\
      --calcdx-url http://127.0.0.1:8000 --token-file /etc/orthanc/calcdx.token  # -> calcdx serve web
  Orthanc /etc/orthanc/calcdx/orthanc.json
Without --out the configuration is printed.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run calcdx for a PACS: DICOM node, DICOMweb service, Orthanc")
    sub = parser.add_subparsers(dest="serve_command", metavar="FRONT_END")
    _register_dicom(sub)
    _register_web(sub)
    _register_orthanc(sub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _register_dicom(sub: Any) -> None:
    p = sub.add_parser("dicom", help="Storage SCP: C-STORE in, SR and overlay back out",
                       description="calcdx as a DICOM node (Storage SCP + Verification).",
                       epilog=DICOM_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML settings (flags override it)")
    p.add_argument("--aet", dest="ae_title", help="our AE title (default CALCDX)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 11112)")
    p.add_argument("--allow", dest="allowed", action="append", metavar="AET[@HOST]",
                   help="calling AE title (optionally bound to a host) allowed to store; repeat; "
                        "nobody is allowed by default")
    p.add_argument("--dest", "--destination", dest="destination", metavar="AET@HOST:PORT",
                   help="where the SR and overlays are sent")
    p.add_argument("--spool", dest="spool_dir", help="durable spool folder")
    p.add_argument("--out", dest="out_dir", help="result folder (JSON, SR, overlays)")
    p.add_argument("--model", dest="model_dir", help="model folder (default: the shipped model)")
    p.add_argument("--idle", dest="study_idle_seconds", type=float,
                   help="seconds without new instances after which a study is complete (default 5)")
    p.add_argument("--max-associations", dest="max_associations", type=int)
    p.add_argument("--max-pdu", dest="max_pdu_bytes", type=int, help="maximum PDU size in bytes (default 16 MiB)")
    p.add_argument("--tls-cert", dest="tls_cert")
    p.add_argument("--tls-key", dest="tls_key")
    p.add_argument("--tls-ca", dest="tls_ca", help="CA that client certificates must be signed by")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run_dicom)


def _register_web(sub: Any) -> None:
    p = sub.add_parser("web", help="DICOMweb analysis service (STOW-RS upload, analysis by reference)",
                       description="calcdx as an HTTP service (FastAPI + uvicorn) with bearer-token authentication.",
                       epilog=WEB_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML settings (flags override it)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--token-file", dest="token_file", help="file holding the bearer token (or $CALCDX_TOKEN)")
    p.add_argument("--work", dest="work_dir", help="folder for jobs and results")
    p.add_argument("--model", dest="model_dir")
    p.add_argument("--dicomweb-source", dest="dicomweb_sources", action="append", metavar="URL",
                   help="DICOMweb base URL that analysis by reference may pull from (repeat)")
    p.add_argument("--max-upload", dest="max_upload_bytes", type=int, help="bytes (default 512 MiB)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run_web)


def _register_orthanc(sub: Any) -> None:
    p = sub.add_parser("orthanc-config", help="write Orthanc's configuration and the calcdx script for it",
                       epilog=ORTHANC_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("lua", "python"), default="lua",
                   help="lua: route to `calcdx serve dicom`; python: orthanc-python -> `calcdx serve web`")
    p.add_argument("--out", help="folder to write orthanc.json and the script into (default: print the config)")
    p.add_argument("--http-port", type=int, default=8042)
    p.add_argument("--dicom-port", type=int, default=4242)
    p.add_argument("--calcdx-aet", default="CALCDX")
    p.add_argument("--calcdx-host", default="127.0.0.1")
    p.add_argument("--calcdx-port", type=int, default=11112)
    p.add_argument("--calcdx-url", default="http://127.0.0.1:8000")
    p.add_argument("--token-file", help="file holding calcdx's bearer token, readable by Orthanc (python mode)")
    p.add_argument("--storage", help="Orthanc's storage folder (default /var/lib/orthanc/db)")
    p.set_defaults(func=run_orthanc_config)


def _logging(verbose: bool) -> None:
    """A service logs what it does (INFO) by default; the CLI's root handler is already in place."""
    logging.basicConfig()
    for handler in logging.getLogger().handlers:  # services log with timestamps
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("calcdx").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.INFO if verbose else logging.WARNING)


def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        while not stop.is_set():
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass


def run_dicom(args: argparse.Namespace) -> int:
    from calcdx.errors import CalcdxError
    from calcdx.inference.pacs import DicomNode, NodeConfig

    _logging(args.verbose)
    keys = ("ae_title", "host", "port", "allowed", "destination", "spool_dir", "out_dir", "model_dir",
            "study_idle_seconds", "max_associations", "max_pdu_bytes", "tls_cert", "tls_key", "tls_ca")
    overrides = {k: getattr(args, k) for k in keys}
    if overrides["allowed"] is not None:
        overrides["allowed"] = tuple(overrides["allowed"])
    try:
        if args.config:
            config = NodeConfig.from_yaml(args.config, **overrides)
        else:
            config = NodeConfig(**{k: v for k, v in overrides.items() if v is not None})
        node = DicomNode(config)
        _ = node.predictor  # load and verify the model before accepting anything
        node.start()
    except (CalcdxError, OSError) as exc:
        print(f"calcdx serve dicom: {exc}", file=sys.stderr)
        return 2
    if not config.allowed:
        print("warning: no --allow entry: every C-STORE will be refused", file=sys.stderr)
    print(f"calcdx DICOM node {config.ae_title} on {config.host}:{node.port}; Ctrl-C to stop", flush=True)
    try:
        _wait_for_signal()
    finally:
        node.stop()
    return 0


def run_web(args: argparse.Namespace) -> int:
    import uvicorn

    from calcdx.errors import CalcdxError
    from calcdx.inference.pacs import WebConfig
    from calcdx.inference.pacs.web import create_app

    _logging(args.verbose)
    keys = ("host", "port", "token_file", "work_dir", "model_dir", "dicomweb_sources", "max_upload_bytes")
    overrides = {k: getattr(args, k) for k in keys}
    if overrides["dicomweb_sources"] is not None:
        overrides["dicomweb_sources"] = tuple(overrides["dicomweb_sources"])
    try:
        if args.config:
            config = WebConfig.from_yaml(args.config, **overrides)
        else:
            config = WebConfig(**{k: v for k, v in overrides.items() if v is not None})
        app = create_app(config)
        app.state.get_predictor()  # load and verify the model before accepting anything
    except CalcdxError as exc:
        print(f"calcdx serve web: {exc}", file=sys.stderr)
        return 2
    print(f"calcdx web service on http://{config.host}:{config.port} (OpenAPI: /openapi.json)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info" if args.verbose else "warning",
                h11_max_incomplete_event_size=64 * 1024, timeout_keep_alive=5)
    return 0


def run_orthanc_config(args: argparse.Namespace) -> int:
    import json

    from calcdx.inference.pacs.orthanc import orthanc_config, write_bundle

    kwargs = {"http_port": args.http_port, "dicom_port": args.dicom_port, "calcdx_aet": args.calcdx_aet,
              "calcdx_host": args.calcdx_host, "calcdx_port": args.calcdx_port, "calcdx_url": args.calcdx_url,
              "token_file": args.token_file, "storage": args.storage}
    if args.out is None:
        print(json.dumps(orthanc_config(args.mode, Path("/etc/orthanc/calcdx"), **kwargs), indent=2))
        return 0
    path = write_bundle(args.mode, Path(args.out), **kwargs)
    print(f"wrote {path} and the {args.mode} script next to it; start: Orthanc {path}")
    return 0

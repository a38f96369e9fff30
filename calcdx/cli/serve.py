"""``calcdx serve``: calcdx as a DICOM node for a PACS."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

EXAMPLE = """\
example (a node that accepts studies from ORTHANC on this machine and sends the SR back to it):
  calcdx serve dicom --aet CALCDX --port 11112 --allow ORTHANC@127.0.0.1 \\
      --destination ORTHANC@127.0.0.1:4242 --spool /var/lib/calcdx/spool --out /var/lib/calcdx/results

or with a YAML file holding the same keys (ae_title, host, port, allowed, destination, spool_dir, out_dir,
study_idle_seconds, max_associations, max_pdu_bytes, timeouts, tls_cert, tls_key, tls_ca):
  calcdx serve dicom --config node.yaml

AE titles are not authentication: outside a trusted network use tls_cert/tls_key and tls_ca
(client certificates required).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run calcdx as a DICOM node for a PACS")
    sub = parser.add_subparsers(dest="serve_command", metavar="FRONT_END")
    dicom = sub.add_parser("dicom", help="Storage SCP: C-STORE in, SR and overlay back out",
                           epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    dicom.add_argument("--config", help="YAML settings (flags override it)")
    dicom.add_argument("--aet", dest="ae_title")
    dicom.add_argument("--host", help="address to bind (default 127.0.0.1)")
    dicom.add_argument("--port", type=int)
    dicom.add_argument("--allow", dest="allowed", action="append", metavar="AET[@HOST]",
                       help="calling AE title allowed to store (repeat); nobody is allowed by default")
    dicom.add_argument("--destination", metavar="AET@HOST:PORT", help="where results are sent")
    dicom.add_argument("--spool", dest="spool_dir")
    dicom.add_argument("--out", dest="out_dir")
    dicom.add_argument("--model", dest="model_dir")
    dicom.add_argument("--idle", dest="study_idle_seconds", type=float, help="seconds without new instances "
                       "after which a study is complete (default 5)")
    dicom.set_defaults(func=run_dicom)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_dicom(args: argparse.Namespace) -> int:
    from calcdx.inference.pacs import DicomNode, NodeConfig

    overrides = {k: getattr(args, k) for k in ("ae_title", "host", "port", "allowed", "destination", "spool_dir",
                                               "out_dir", "model_dir", "study_idle_seconds")}
    if overrides["allowed"] is not None:
        overrides["allowed"] = tuple(overrides["allowed"])
    if args.config:
        config = NodeConfig.from_yaml(args.config, **overrides)
    else:
        config = NodeConfig(**{k: v for k, v in overrides.items() if v is not None})
    node = DicomNode(config)
    _ = node.predictor  # load and verify the model before accepting anything
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    node.start()
    print(f"calcdx DICOM node {config.ae_title} on {config.host}:{config.port}; Ctrl-C to stop", flush=True)
    try:
        while not stop.is_set():
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
    return 0

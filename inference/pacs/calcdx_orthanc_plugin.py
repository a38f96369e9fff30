"""calcdx trigger for Orthanc's Python plugin (Debian package ``orthanc-python``).

This file is loaded by Orthanc, not imported by calcdx: it runs inside Orthanc with Debian's
own Python 3.11 and uses the standard library only.  When a study becomes stable
(``OnChange`` / ``STABLE_STUDY``, not the stored-instance callback, which runs inside the
C-STORE and blocks the sender), it asks the calcdx web service (``calcdx serve web``, a
separate process) to analyse the study by reference: calcdx pulls the study from Orthanc's
DICOMweb plugin and stores the SR and overlays back into the same study with STOW-RS.
Nothing of calcdx runs inside Orthanc's (AGPL) plugin host; this script only makes one HTTP
request per study.

Orthanc configuration::

    "Plugins": [".../libOrthancPython.so", ".../libOrthancDicomWeb.so", ".../libOrthancGdcm.so"],
    "PythonScript": "/etc/orthanc/calcdx_orthanc_plugin.py",
    "Calcdx": {
        "Url": "http://127.0.0.1:8000",               # calcdx serve web
        "TokenFile": "/etc/orthanc/calcdx.token",     # the service's bearer token (or "Token")
        "DicomWebUrl": "http://127.0.0.1:8042/dicom-web",  # Orthanc's DICOMweb root, as calcdx reaches it
        "Modalities": ["CR", "DX"]
    }

``calcdx serve orthanc-config --mode python`` writes this configuration and script.
"""

import json
import threading
import time
import urllib.request

import orthanc  # provided by Orthanc's Python plugin

DEFAULT_MODALITIES = ("CR", "DX")
ATTEMPTS = 4


def _settings():
    return json.loads(orthanc.GetConfiguration()).get("Calcdx", {})


def _token(settings):
    if settings.get("TokenFile"):
        with open(settings["TokenFile"], encoding="utf-8") as fh:
            return fh.read().strip()
    return settings.get("Token", "")


def _should_analyse(study_id, modalities):
    """True when the study holds a radiograph series and no calcdx result yet."""
    series = json.loads(orthanc.RestApiGet(f"/studies/{study_id}/series"))
    found = False
    for s in series:
        tags = s.get("MainDicomTags", {})
        if "calcdx" in (tags.get("SeriesDescription") or ""):
            return False  # our own results made the study change (and become stable) again
        if tags.get("Modality") in modalities:
            found = True
    return found


def _submit(study_id):
    try:
        settings = _settings()
        if not _should_analyse(study_id, tuple(settings.get("Modalities", DEFAULT_MODALITIES))):
            return
        study = json.loads(orthanc.RestApiGet(f"/studies/{study_id}"))
        body = json.dumps({"dicomweb_url": settings["DicomWebUrl"],
                           "study_instance_uid": study["MainDicomTags"]["StudyInstanceUID"],
                           "store_back": True}).encode()
        request = urllib.request.Request(settings["Url"].rstrip("/") + "/analyses", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": "Bearer " + _token(settings)})
    except Exception as exc:  # never let the plugin thread die silently
        orthanc.LogError(f"calcdx: cannot prepare the request for study {study_id}: {exc}")
        return
    delay = 2.0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                job = json.loads(response.read())
            orthanc.LogWarning(f"calcdx: study {study_id} submitted, job {job.get('id')}")
            return
        except Exception as exc:
            orthanc.LogWarning(f"calcdx: submitting study {study_id} failed ({exc}), attempt {attempt}")
            if getattr(exc, "code", 0) in (400, 401, 403, 422):
                return  # will not succeed on retry
            time.sleep(delay)
            delay *= 2
    orthanc.LogError(f"calcdx: study {study_id} could not be submitted")


def on_change(change_type, level, resource_id):
    if change_type == orthanc.ChangeType.STABLE_STUDY:
        # do the HTTP work off Orthanc's change thread
        threading.Thread(target=_submit, args=(resource_id,), daemon=True).start()


orthanc.RegisterOnChangeCallback(on_change)

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
    },
    "UserMetadata": {"CalcdxRadiographs": 4201}

``calcdx serve orthanc-config --mode python`` writes this configuration and script.
"""

import json
import threading
import time
import urllib.request

import orthanc  # provided by Orthanc's Python plugin

DEFAULT_MODALITIES = ("CR", "DX")
METADATA = "CalcdxRadiographs"  # declared in the configuration's "UserMetadata"
ATTEMPTS = 4


def _settings():
    return json.loads(orthanc.GetConfiguration()).get("Calcdx", {})


def _token(settings):
    if settings.get("TokenFile"):
        with open(settings["TokenFile"], encoding="utf-8") as fh:
            return fh.read().strip()
    return settings.get("Token", "")


def _radiographs_to_analyse(study_id, modalities):
    """How many radiograph instances the study holds, when calcdx has not yet analysed that many (else None).

    The study's metadata ``CalcdxRadiographs`` keeps the count submitted last: an image that arrives after the
    analysis makes the study be submitted again (calcdx pulls every radiograph series, so the new results
    cover all of them); calcdx's own results, stored back into the study, make it change (and become stable)
    once more but add no radiograph, so they never trigger a second analysis."""
    series = json.loads(orthanc.RestApiGet(f"/studies/{study_id}/series"))
    count, has_results = 0, False
    for s in series:
        tags = s.get("MainDicomTags", {})
        if "calcdx" in (tags.get("SeriesDescription") or ""):
            has_results = True
        if tags.get("Modality") in modalities:
            count += len(s.get("Instances", []))
    try:
        before = int(orthanc.RestApiGet(f"/studies/{study_id}/metadata/{METADATA}"))
    except Exception:  # never submitted (404), or not a number
        before = count if has_results else None  # analysed before the count was kept: leave it
    if count == 0 or (before is not None and count <= before):
        return None
    return count


def _submit(study_id):
    try:
        settings = _settings()
        count = _radiographs_to_analyse(study_id, tuple(settings.get("Modalities", DEFAULT_MODALITIES)))
        if count is None:
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
            orthanc.LogWarning(f"calcdx: study {study_id} submitted ({count} radiographs), job {job.get('id')}")
            orthanc.RestApiPut(f"/studies/{study_id}/metadata/{METADATA}", str(count))
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

-- calcdx auto-routing for Orthanc: when a study becomes stable, send it to the calcdx DICOM node.
-- calcdx analyses it and C-STOREs the SR and overlays back into the same study in Orthanc.
-- Install: add this file to Orthanc's "LuaScripts" and a "calcdx" entry to "DicomModalities".
-- The stored-instance callback is deliberately not used: it runs inside the C-STORE and blocks the sender.

function OnStableStudy(studyId, tags, metadata)
  local series = ParseJson(RestApiGet("/studies/" .. studyId .. "/series"))
  -- a study that already holds calcdx's report is not routed again (its results coming back
  -- make the study change, and stable, once more)
  for _, s in ipairs(series) do
    local description = s["MainDicomTags"]["SeriesDescription"]
    if description ~= nil and string.find(description, "calcdx") then
      return
    end
  end
  local toSend = {}
  for _, s in ipairs(series) do
    local modality = s["MainDicomTags"]["Modality"]
    if modality == "CR" or modality == "DX" then
      table.insert(toSend, s["ID"])
    end
  end
  if #toSend > 0 then
    print("calcdx: routing " .. #toSend .. " series of study " .. studyId)
    for _, id in ipairs(toSend) do
      RestApiPost("/modalities/calcdx/store", id)
    end
  end
end

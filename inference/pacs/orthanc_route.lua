-- calcdx auto-routing for Orthanc: when a study becomes stable, send its radiograph series to the calcdx
-- DICOM node.  calcdx analyses them and C-STOREs the SR and overlays back into the same study in Orthanc.
-- Install: add this file to Orthanc's "LuaScripts", a "calcdx" entry to "DicomModalities" and
-- "CalcdxRadiographs" to "UserMetadata" (`calcdx serve orthanc-config` writes all three).
-- The stored-instance callback is deliberately not used: it runs inside the C-STORE and blocks the sender.
--
-- The study's metadata "CalcdxRadiographs" holds how many radiograph instances were routed.  The study is
-- routed again only when it holds more (an image that arrived after the analysis; the node analyses it with
-- the earlier ones), never when calcdx's own results arrive: they make the study change, and become stable,
-- once more, but add no radiograph.

local RADIOGRAPHS = { CR = true, DX = true }

function OnStableStudy(studyId, tags, metadata)
  local series = ParseJson(RestApiGet("/studies/" .. studyId .. "/series"))
  local toSend, count, hasResults = {}, 0, false
  for _, s in ipairs(series) do
    local main = s["MainDicomTags"]
    if RADIOGRAPHS[main["Modality"]] then
      table.insert(toSend, s["ID"])
      count = count + #s["Instances"]
    end
    local description = main["SeriesDescription"]
    if description ~= nil and string.find(description, "calcdx") then
      hasResults = true
    end
  end
  local known, routed = pcall(RestApiGet, "/studies/" .. studyId .. "/metadata/CalcdxRadiographs")
  local before = known and tonumber(routed) or nil
  if before == nil and hasResults then
    before = count  -- analysed before this script kept count: leave it as it is
  end
  if #toSend == 0 or (before ~= nil and count <= before) then
    return
  end
  print("calcdx: routing " .. #toSend .. " series (" .. count .. " radiographs) of study " .. studyId)
  for _, id in ipairs(toSend) do
    RestApiPost("/modalities/calcdx/store", id)
  end
  RestApiPut("/studies/" .. studyId .. "/metadata/CalcdxRadiographs", tostring(count))
end

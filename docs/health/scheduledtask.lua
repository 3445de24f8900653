-- Argo CD health check for celeryoperator.dev/ScheduledTask
-- (argocd-cm key: resource.customizations.health.celeryoperator.dev_ScheduledTask).
-- Lua 5.1 (Argo CD's gopher-lua); tested in tests/unit/test_health_lua.py.
--
--   no status yet, or status older than the spec    Progressing
--   Stalled=True (Failed, Expired, Invalid)          Degraded
--   Scheduled                                        Healthy: waiting for its due time is
--                                                    the desired state, maybe for days
--   Dispatching, Queued, Started, Retrying,          Progressing
--   Revoking
--   Succeeded                                        Healthy
--   Revoked                                          Healthy: cancelled as spec.revoke asked;
--                                                    final, so not Suspended (not resumable)
hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to schedule the task"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local stalled = condition(status, "Stalled")
if (stalled ~= nil and stalled.status == "True") or phase == "Failed" or phase == "Expired" or phase == "Invalid" then
  hs.status = "Degraded"
  if status.error ~= nil and status.error.message ~= nil then
    local kind = status.error.type or "Error"
    hs.message = phase .. ": " .. kind .. ": " .. status.error.message
  elseif stalled ~= nil and stalled.message ~= nil and stalled.message ~= "" then
    hs.message = phase .. ": " .. stalled.message
  else
    hs.message = phase
  end
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
  if status.completionTime ~= nil then
    hs.message = "Succeeded at " .. status.completionTime
  end
  return hs
end

if phase == "Scheduled" then
  hs.status = "Healthy"
  if status.dueTime ~= nil then
    hs.message = "Scheduled: due at " .. status.dueTime
  else
    hs.message = "Scheduled"
  end
  return hs
end

if phase == "Revoked" then
  hs.status = "Healthy"
  hs.message = "Revoked as requested"
  return hs
end

if phase == "Dispatching" or phase == "Queued" or phase == "Started" or phase == "Retrying"
    or phase == "Revoking" then
  hs.status = "Progressing"
  hs.message = phase
  if status.attempt ~= nil then
    hs.message = phase .. " (attempt " .. tostring(status.attempt) .. ")"
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs

-- Argo CD health check for celeryoperator.dev/PeriodicTask
-- (argocd-cm key: resource.customizations.health.celeryoperator.dev_PeriodicTask).
-- Lua 5.1 (Argo CD's gopher-lua); tested in tests/unit/test_health_lua.py.
--
--   no status yet, or status older than the spec    Progressing
--   Stalled=True (an invalid spec)                   Degraded
--   spec.suspend: true                               Suspended
--   Ready=True                                       Healthy ("next run at ...")
--   anything else                                    Progressing
-- A failed run does not make its PeriodicTask Degraded: each run is a child ScheduledTask
-- with its own health, which Argo CD shows in the resource tree.
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
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the schedule"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or "Stalled"
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: no runs are created"
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Waiting for the schedule to become ready"
end
return hs

-- Argo CD health check for modelship.io/ModelDeployment (docs/gitops.md). It reads the conditions
-- modelship computes for every tool: Ready, kstatus' Reconciling and Stalled, Paused, Available.
--   Healthy      Ready: the spec's revision is stable and serves all traffic
--   Progressing  a rollout (or first deploy, or scale-up) is in flight, or not observed yet
--   Suspended    a rollout waits for a person: paused, or its candidate was refused (aborted or
--                rolled back by analysis) while the stable revision serves; `retry` or a new spec
--   Degraded     stalled and not serving as it should: the stable revision cannot come up, or
--                traffic cannot be routed to it
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function said(c)
  if c == nil then
    return ""
  end
  return (c.reason or "") .. ": " .. (c.message or "")
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for modelship to report a status"
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for modelship to observe generation " .. obj.metadata.generation
  return hs
end

local ready = condition("Ready")
if ready == nil then
  -- An operator from before these conditions: its phase is all there is.
  local phases = { Healthy = "Healthy", RolledBack = "Healthy", Paused = "Suspended", Degraded = "Degraded" }
  hs.status = phases[status.phase] or "Progressing"
  hs.message = "phase " .. (status.phase or "unknown")
  return hs
end
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  local refused = status.rollout ~= nil and status.rollout.aborted ~= nil
  if refused and is_true(condition("Available")) then
    hs.status = "Suspended"
    hs.message = "Rollout refused, the stable revision serves: " .. said(stalled)
  else
    hs.status = "Degraded"
    hs.message = said(stalled)
  end
  return hs
end

local paused = condition("Paused")
if is_true(paused) then
  hs.status = "Suspended"
  hs.message = said(paused)
  return hs
end

hs.status = "Progressing"
local reconciling = condition("Reconciling")
hs.message = said(reconciling or ready)
return hs

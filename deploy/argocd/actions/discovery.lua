-- Argo CD resource actions for modelship.io/ModelDeployment (docs/gitops.md): the kubectl plugin's
-- verbs, each a change of the status only (Argo CD patches the status subresource), so a sync or
-- self-heal from Git never undoes them. Enabled only where the verb applies.
local actions = {}
local status = obj.status or {}
local rollout = status.rollout or {}
local canary, blue_green, aborted = rollout.canary, rollout.blueGreen, rollout.aborted
local rolling = canary ~= nil or blue_green ~= nil
local promotable = canary ~= nil
if blue_green ~= nil then
  local phase = blue_green.phase or "Preview"
  promotable = phase == "Preview" or phase == "Switched"
end
actions["promote"] = { ["disabled"] = not promotable }
actions["promote-full"] = { ["disabled"] = not rolling }
actions["abort"] = { ["disabled"] = not rolling }
actions["retry"] = { ["disabled"] = aborted == nil }
actions["pause"] = { ["disabled"] = status.pause ~= nil }
actions["resume"] = { ["disabled"] = status.pause == nil }
return actions

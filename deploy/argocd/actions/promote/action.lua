-- `modelship promote`: a canary moves on one step (ending its pause); a blue/green preview
-- switches (Preview -> Promoted), or its post-promotion analysis is accepted (Switched -> Accepted).
local rollout = obj.status and obj.status.rollout
if rollout ~= nil and rollout.canary ~= nil then
  rollout.canary.step = (rollout.canary.step or 0) + 1
  rollout.canary.pauseStartTime = nil
  return obj
end
if rollout ~= nil and rollout.blueGreen ~= nil then
  local phase = rollout.blueGreen.phase or "Preview"
  if phase == "Preview" then
    rollout.blueGreen.phase = "Promoted"
  elseif phase == "Switched" then
    rollout.blueGreen.phase = "Accepted"
  else
    error("preview " .. rollout.blueGreen.revision .. " is already promoted (phase " .. phase
      .. "); promote-full skips the remaining gates")
  end
  return obj
end
error("no rollout in progress")

-- `modelship promote --full`: skip the remaining canary steps or blue/green gates.
local rollout = obj.status and obj.status.rollout
local state = rollout and (rollout.canary or rollout.blueGreen)
if state == nil then
  error("no rollout in progress")
end
state.promoteFull = true
return obj

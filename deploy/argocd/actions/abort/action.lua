-- `modelship abort`: all traffic back to the stable revision; the rollout is recorded as aborted
-- and stays so until `retry` or a new spec.
local rollout = obj.status and obj.status.rollout
local state = rollout and (rollout.canary or rollout.blueGreen)
if state == nil then
  error("no rollout in progress")
end
obj.status.rollout = { aborted = { revision = state.revision } }
return obj

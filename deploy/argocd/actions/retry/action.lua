-- `modelship retry`: clear an aborted rollout; the spec's revision rolls out again from step 0.
if obj.status == nil or obj.status.rollout == nil or obj.status.rollout.aborted == nil then
  error("nothing to retry: no rollout was aborted")
end
obj.status.rollout = nil
return obj

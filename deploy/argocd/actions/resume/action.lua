-- `modelship resume`: remove status.pause. A `spec.paused: true` is the manifest's: it holds
-- until it is changed in Git.
if obj.status == nil or obj.status.pause == nil then
  error("not paused by an action: status.pause is not set (spec.paused is changed in Git)")
end
obj.status.pause = nil
return obj

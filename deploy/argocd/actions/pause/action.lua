-- `modelship pause`: hold any rollout where it is (status.pause; spec.paused, the pause kept in
-- Git, is left alone). Who asked first, and when, is kept.
if obj.status == nil then
  obj.status = {}
end
if obj.status.pause == nil then
  obj.status.pause = { by = "argocd", at = os.date("!%Y-%m-%dT%H:%M:%SZ") }
end
return obj

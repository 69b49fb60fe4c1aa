graph @state_type(%x: f32[3], %u: f32[4]) -> (%y: f32[3]) {
  state %u <- %y
  %y = leaky_relu(%x) : f32[3] loc("act")
  return %y
}

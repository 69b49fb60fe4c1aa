graph @syntax_error(%x: f32[3]) -> (%y: f32[3]) {
  %y = leaky_relu(%x {slope = 0.1} : f32[3]
  return %y
}

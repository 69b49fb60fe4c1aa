graph @defined_twice(%x: f32[3]) -> (%y: f32[3]) {
  %y = leaky_relu(%x) : f32[3] loc("a")
  %y = leaky_relu(%x) : f32[3] loc("b")
  return %y
}

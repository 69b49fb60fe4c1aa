graph @linear(%x: f32[3]) -> (%y: f32[2]) {
  %w = weight() {value = weight<f32[2,3] = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0]>} : f32[2,3]
  %y = linear(%x, %w) : f32[2] loc("fc")
  return %y
}

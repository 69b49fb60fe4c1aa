graph @shape_mismatch(%x: f32[4]) -> (%y: f32[2]) {
  %w = weight() {value = weight<f32[2,3] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]>} : f32[2,3] loc("fc")
  %y = linear(%x, %w) : f32[2] loc("fc")
  return %y
}

graph @use_before_def(%x: f32[3]) -> (%y: f32[3]) {
  %y = add(%x, %b) : f32[3] loc("bias")
  %b = weight() {value = weight<f32[3] = [1.0, 2.0, 3.0]>} : f32[3] loc("bias")
  return %y
}

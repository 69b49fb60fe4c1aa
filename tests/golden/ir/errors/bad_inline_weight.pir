graph @bad_inline_weight(%x: f32[3]) -> (%y: f32[3]) {
  %b = weight() {value = weight<f32[3] = [1.0, 2.0]>} : f32[3] loc("bias")
  %y = add(%x, %b) : f32[3] loc("bias")
  return %y
}

graph @add_mul(%x: f32[2,2,2]) -> (%y: f32[2,2,2]) {
  %b = weight() {value = weight<f32[2,1,1] = [0.5, -1.0]>} : f32[2,1,1]
  %a = add(%x, %b) : f32[2,2,2] loc("bias")
  %y = mul(%a, %a) : f32[2,2,2] loc("square")
  return %y
}

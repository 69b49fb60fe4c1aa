graph @add_mul(%x: f32[2,2,2]) -> (%y: f32[2,2,2]) {
  %b = weight() {value = weight<f32[2,1,1] #9aeaaa5ab7b7082f>} : f32[2,1,1]
  %a = add(%x, %b) : f32[2,2,2] loc("bias")
  %y = mul(%a, %a) : f32[2,2,2] loc("square")
  return %y
}

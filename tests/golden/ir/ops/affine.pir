graph @affine(%x: f32[2,3]) -> (%y: f32[2,3]) {
  %scale = weight() {value = weight<f32[2] = [2.0, -0.5]>} : f32[2]
  %shift = weight() {value = weight<f32[2] = [0.25, 1.0]>} : f32[2]
  %y = affine(%x, %scale, %shift) : f32[2,3] loc("bn.folded")
  return %y
}

graph @shape_ops(%x: f32[2,3,4]) -> (%r: f32[4,6], %l: f32[24]) {
  %f = flatten(%x) : f32[24] loc("flatten")
  %r = reshape(%f) {shape = [4, 6]} : f32[4,6] loc("reshape")
  %l = leaky_relu(%f) {slope = 0.1} : f32[24] loc("act")
  return %r, %l
}

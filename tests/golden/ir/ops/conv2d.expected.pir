graph @conv2d(%x: f32[2,5,5]) -> (%y: f32[2,3,3]) {
  %w = weight() {value = weight<f32[2,1,3,3] #13fd69807d4e58fd>} : f32[2,1,3,3]
  %y = conv2d(%x, %w) {dilation = [1, 1], groups = 2, padding = [1, 1], stride = [2, 2]} : f32[2,3,3] loc("conv")
  return %y
}

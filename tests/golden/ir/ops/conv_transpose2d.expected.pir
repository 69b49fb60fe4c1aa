graph @conv_transpose2d(%x: f32[1,3,3]) -> (%y: f32[2,6,6]) {
  %w = weight() {value = weight<f32[1,2,3,3] #6d426fb473d7a83c>} : f32[1,2,3,3]
  %y = conv_transpose2d(%x, %w) {dilation = [1, 1], groups = 1, output_padding = [1, 1], padding = [1, 1], stride = [2, 2]} : f32[2,6,6] loc("deconv")
  return %y
}

graph @conv_transpose2d(%x: f32[1,3,3]) -> (%y: f32[2,6,6]) {
  %w = weight() {value = weight<f32[1,2,3,3] = [1.0, 0.5, 0.25, 0.0, 1.0, 0.0, -0.25, -0.5, -1.0, 0.5, 0.5, 0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5]>} : f32[1,2,3,3]
  %y = conv_transpose2d(%x, %w) {output_padding = [1, 1], padding = [1, 1], stride = [2, 2]} : f32[2,6,6] loc("deconv")
  return %y
}

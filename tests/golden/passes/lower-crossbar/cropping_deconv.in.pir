graph @cropping_deconv(%x: f32[1,4,4]) -> (%conv_transpose2d: f32[1,3,3]) {
  %deconv.weight = weight() {value = weight<f32[1,1,3,3] #ca0d3febca081caa>} : f32[1,1,3,3] loc("deconv")
  %conv_transpose2d = conv_transpose2d(%x, %deconv.weight) {dilation = [1, 1], groups = 1, output_padding = [0, 0], padding = [3, 3], stride = [2, 2]} : f32[1,3,3] loc("deconv")
  return %conv_transpose2d
}

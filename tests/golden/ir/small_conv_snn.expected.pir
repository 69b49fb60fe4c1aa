graph @small_conv_snn(%x: f32[1,4,4], %u0: f32[2,4,4], %s0: f32[2,4,4], %uo: f32[3], %sum: f32[3], %count: f32[1]) -> (%mean: f32[3], %u0.next: f32[2,4,4], %s0.next: f32[2,4,4], %uo.next: f32[3], %sum.next: f32[3], %count.next: f32[1]) {
  meta input_encoding = "event_counts"
  meta readout = "mean"
  meta timesteps = 4
  state %u0 <- %u0.next
  state %s0 <- %s0.next
  state %uo <- %uo.next
  state %sum <- %sum.next
  state %count <- %count.next
  %w0 = weight() {value = weight<f32[2,1,3,3] #0a351e9c983e7978>} : f32[2,1,3,3] loc("features.conv0")
  %c0 = conv2d(%x, %w0) {dilation = [1, 1], groups = 1, padding = [1, 1], stride = [1, 1]} : f32[2,4,4] loc("features.conv0")
  %s0.next, %u0.next = lif(%c0, %u0, %s0) {keep = 0.2, reset = "zero", reset_timing = "before_leak", slope = 0.1, strict = true, threshold = 0.2} : f32[2,4,4], f32[2,4,4] loc("features.lif0")
  %p0 = avg_pool2d(%s0.next) {kernel = [2, 2], padding = [0, 0], stride = [2, 2]} : f32[2,2,2] loc("features.pool0")
  %f = flatten(%p0) : f32[8] loc("features.flatten")
  %w1 = weight() {value = weight<f32[3,8] #0305e269868aa431>} : f32[3,8] loc("classifier.linear0")
  %y = linear(%f, %w1) : f32[3] loc("classifier.linear0")
  %uo.next = integrator(%y, %uo) {keep = 1.0, slope = 0.1} : f32[3] loc("classifier.out")
  %mean, %sum.next, %count.next = readout_mean(%uo.next, %sum, %count) : f32[3], f32[3], f32[1] loc("readout")
  return %mean, %u0.next, %s0.next, %uo.next, %sum.next, %count.next
}

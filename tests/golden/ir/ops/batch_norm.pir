graph @batch_norm(%x: f32[4,2,2]) -> (%y: f32[4,2,2]) {
  %gamma = weight() {value = weight<f32[4] = [1.0, 0.5, -0.5, 2.0]>} : f32[4]
  %beta = weight() {value = weight<f32[4] = [0.0, 0.1, 0.2, 0.3]>} : f32[4]
  %mean = weight() {value = weight<f32[4] = [0.5, 0.5, -0.5, 0.0]>} : f32[4]
  %var = weight() {value = weight<f32[4] = [1.0, 4.0, 0.25, 2.0]>} : f32[4]
  %y = batch_norm(%x, %gamma, %beta, %mean, %var) {eps = 0.001} : f32[4,2,2] loc("bn")
  return %y
}

graph @batch_norm(%x: f32[4,2,2]) -> (%y: f32[4,2,2]) {
  %gamma = weight() {value = weight<f32[4] #e54d6137a6b68af1>} : f32[4]
  %beta = weight() {value = weight<f32[4] #8e48e08f5810a7bb>} : f32[4]
  %mean = weight() {value = weight<f32[4] #ed7792bd7d9260bb>} : f32[4]
  %var = weight() {value = weight<f32[4] #9d3bff3da655a1e1>} : f32[4]
  %y = batch_norm(%x, %gamma, %beta, %mean, %var) {eps = 0.001} : f32[4,2,2] loc("bn")
  return %y
}

graph @batch_norm_of_input(%x: f32[2], %mean: f32[2]) -> (%batch_norm: f32[2]) {
  %bn.weight = weight() {value = weight<f32[2] #a42f776c65fd6dba>} : f32[2] loc("bn")
  %batch_norm = batch_norm(%x, %bn.weight, %bn.weight, %mean, %bn.weight) {eps = 1e-05} : f32[2] loc("bn")
  return %batch_norm
}

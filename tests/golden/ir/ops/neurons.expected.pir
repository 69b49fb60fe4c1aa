graph @neurons(%i: f32[3], %u1: f32[3], %s1: f32[3], %u2: f32[3], %s2: f32[3], %u3: f32[3], %acc: f32[3]) -> (%y: f32[3], %s1.n: f32[3], %u1.n: f32[3], %s2.n: f32[3], %u2.n: f32[3], %u3.n: f32[3], %acc.n: f32[3]) {
  meta readout = "exp_tanh"
  state %u1 <- %u1.n
  state %s1 <- %s1.n
  state %u2 <- %u2.n
  state %s2 <- %s2.n
  state %u3 <- %u3.n
  state %acc <- %acc.n
  %s1.n, %u1.n = lif(%i, %u1, %s1) {keep = 0.9, reset = "subtract", reset_timing = "after_leak", slope = 1.0, strict = true, threshold = 1.0} : f32[3], f32[3] loc("leaky")
  %s2.n, %u2.n = lif(%i, %u2, %s2) {keep = 0.25, reset = "zero", reset_timing = "before_leak", slope = 1.0, strict = false, threshold = 0.2} : f32[3], f32[3] loc("fsvae")
  %u3.n = integrator(%i, %u3) {keep = 0.5, slope = 1.0} : f32[3] loc("integrator")
  %y, %acc.n = readout_exp_tanh(%u3.n, %acc) {decay = 0.8} : f32[3], f32[3] loc("readout")
  return %y, %s1.n, %u1.n, %s2.n, %u2.n, %u3.n, %acc.n
}

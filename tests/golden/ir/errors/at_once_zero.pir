graph @at_once_zero(%i: f32[3], %u: f32[3], %s: f32[3]) -> (%s.n: f32[3], %u.n: f32[3]) {
  state %u <- %u.n
  state %s <- %s.n
  %s.n, %u.n = lif(%i, %u, %s) {keep = 0.5, reset = "zero", reset_timing = "at_once", slope = 1.0, strict = true, threshold = 1.0} : f32[3], f32[3] loc("lif")
  return %s.n, %u.n
}

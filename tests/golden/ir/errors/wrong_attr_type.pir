graph @wrong_attr_type(%x: f32[3]) -> (%y: f32[3]) {
  %y = leaky_relu(%x) {slope = "steep"} : f32[3] loc("act")
  return %y
}

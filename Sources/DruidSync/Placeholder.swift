internal import CSystemd
func notify() -> Int32 { sd_notify(0, "READY=1") }

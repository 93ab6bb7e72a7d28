package config

// Adapter is a LoRA adapter served on its parent model's endpoints
// (inference.models[].adapters).
type Adapter struct {
	// Name is the model name clients send and /v1/models lists.
	Name string `yaml:"name"`
	// Source is where the engine loads the adapter from.
	Source string `yaml:"source"`
}

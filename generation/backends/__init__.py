"""Model backends: the teacher protocol and response, the embedded llama.cpp model, OpenAI-
compatible servers, TensorRT-LLM, reward models, the request cache and retry policy."""

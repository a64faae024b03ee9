// The configuration, one concept per module: types (the contract), reader (field by field, every
// problem collected), hints (typo suggestions), endpoints (addresses, Docker hosts), rules
// (cross-field), ports (host port arithmetic), settings (readSettings, which ties them together).
export * from "./types";
export { isLoopback, isWildcard, parseDockerEndpoint } from "./endpoints";
export { dataPlanePorts, nodePorts, portProblems } from "./ports";
export { ROOT_KEYS, readSettings } from "./settings";

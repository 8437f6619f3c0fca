// Names a report may carry. A node's name is a Kubernetes object name, a DNS-1123 subdomain; a
// cluster's name is a DNS-1123 label. Neither can hold a "/", so "<cluster>/<node>" names one
// node of one cluster without ambiguity (the aggregator's node key). No zod: the agent loads this.

export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const MAX_NODE_NAME = 253;
export const MAX_CLUSTER_NAME = 63;
// "<cluster>/<node>", the aggregator's key for a node of a named cluster.
export const MAX_NODE_KEY = MAX_CLUSTER_NAME + 1 + MAX_NODE_NAME;

export const NODE_NAME_RULE = 'a DNS-1123 subdomain: at most 253 lowercase letters, digits, "-" and ".", starting and ending with a letter or digit';
export const CLUSTER_NAME_RULE = 'a DNS-1123 label: at most 63 lowercase letters, digits and "-", starting and ending with a letter or digit';

export function isNodeName(name: string): boolean {
  return name.length <= MAX_NODE_NAME && DNS1123_SUBDOMAIN.test(name);
}

export function isClusterName(name: string): boolean {
  return name.length <= MAX_CLUSTER_NAME && DNS1123_LABEL.test(name);
}

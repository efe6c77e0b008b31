/**
 * Checks printed Kubernetes manifests against the Kubernetes API's OpenAPI schemas (through
 * `kubernetes-models`, whose classes validate with them): a YAML stream in, the objects out.
 *
 * @module
 */
import { parseAllDocuments } from "yaml";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Job } from "kubernetes-models/batch/v1/Job";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";

/** A parsed manifest. */
export type KubeObject = Record<string, unknown> & { readonly kind: string };

const MODELS: Readonly<Record<string, (data: never) => { validate(): void }>> = {
  "v1/ConfigMap": (data) => new ConfigMap(data),
  "v1/Secret": (data) => new Secret(data),
  "v1/Service": (data) => new Service(data),
  "apps/v1/Deployment": (data) => new Deployment(data),
  "batch/v1/Job": (data) => new Job(data),
  "policy/v1/PodDisruptionBudget": (data) => new PodDisruptionBudget(data),
};

/**
 * Parses a YAML stream and validates each document against its kind's schema.
 *
 * @param text The YAML.
 * @returns The documents.
 * @throws {Error} Naming the document and the schema rule it breaks.
 */
export function validateManifests(text: string): KubeObject[] {
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents)) throw new Error("Not a YAML stream");
  return documents.map((document, index) => {
    if (document.errors.length > 0) {
      throw new Error(`Document ${index}: ${document.errors[0]?.message}`);
    }
    const data = document.toJS() as KubeObject & { apiVersion: string };
    const model = MODELS[`${data.apiVersion}/${data.kind}`];
    if (model === undefined) throw new Error(`Document ${index}: no schema for ${data.kind}`);
    try {
      model(data as never).validate();
    } catch (error) {
      throw new Error(`Document ${index} (${data.kind}): ${String(error)}`, { cause: error });
    }
    return data;
  });
}

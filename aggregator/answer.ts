// An HTTP answer's body: JSON when it parses, else its text. The Kubernetes API and the
// aggregator answer errors in JSON, while /metrics, /readyz and a proxy in the way answer text:
// the caller gets whichever it is, and words its error from it.
import type { Dispatcher } from 'undici';

export interface Answer<T> {
  status: number;
  body: T;
}

export async function answerOf<T>(res: Dispatcher.ResponseData): Promise<Answer<T>> {
  const text = await res.body.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // text: kept as it came
  }
  return { status: res.statusCode, body: body as T };
}

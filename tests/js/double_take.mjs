// double-take's Rekognition detector, as a script: the calls it makes, configured the way it is.
//
// double-take gives the SDK a region and a key pair and nothing else; the endpoint comes from
// AWS_ENDPOINT_URL_REKOGNITION, so pointing it at Visage needs no change to its code. It then
// matches on Rekognition's messages: an error whose message contains "no faces" means "no
// match", any other error is a failure. This script runs those calls against the server that
// AWS_ENDPOINT_URL_REKOGNITION names and prints one JSON object per step, for
// tests/test_js_client.py to check.
//
//   node double_take.mjs COLLECTION FACE_IMAGE SAME_PERSON_IMAGE NO_FACE_IMAGE

import { readFileSync } from "node:fs";
import {
  CreateCollectionCommand,
  DeleteFacesCommand,
  DescribeCollectionCommand,
  IndexFacesCommand,
  RekognitionClient,
  SearchFacesByImageCommand,
} from "@aws-sdk/client-rekognition";

const [collection, faceImage, samePersonImage, noFaceImage] = process.argv.slice(2);
if (!noFaceImage) {
  console.error("usage: node double_take.mjs COLLECTION FACE_IMAGE SAME_PERSON_IMAGE NO_FACE_IMAGE");
  process.exit(2);
}

const client = new RekognitionClient({
  region: process.env.AWS_REGION,
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
});

const report = (step, fields) => console.log(JSON.stringify({ step, ...fields }));
const failure = (error) => ({ name: error.name, message: error.message, status: error.$metadata?.httpStatusCode });

// double-take's check on a recognition result: an error that does not say "no faces" is a failure.
function normalize(data) {
  if (data?.$metadata?.httpStatusCode !== 200 && !data?.error?.includes("no faces")) {
    throw new Error(data.error);
  }
  return (data.FaceMatches || []).map((match) => ({ faceId: match.Face.FaceId, similarity: match.Similarity }));
}

// A failed call reaches normalize as { error: message }.
async function recognize(image) {
  try {
    return await client.send(
      new SearchFacesByImageCommand({ CollectionId: collection, Image: { Bytes: readFileSync(image) } }),
    );
  } catch (error) {
    return { error: error.message, failure: failure(error) };
  }
}

// At start: describe the collection, and create it if it is not there.
try {
  await client.send(new DescribeCollectionCommand({ CollectionId: collection }));
  report("describe", { existed: true });
} catch (error) {
  report("describe", { existed: false, failure: failure(error) });
  if (error.name !== "ResourceNotFoundException") throw error;
  const created = await client.send(new CreateCollectionCommand({ CollectionId: collection }));
  report("create", { status: created.StatusCode, arn: created.CollectionArn });
}

// Train: index a photo.
const indexed = await client.send(
  new IndexFacesCommand({ CollectionId: collection, Image: { Bytes: readFileSync(faceImage) } }),
);
const faceIds = indexed.FaceRecords.map((record) => record.Face.FaceId);
report("index", { faceIds });

// Recognize: another photo of the same person, then a photo without a face.
const match = await recognize(samePersonImage);
report("recognize", { matches: normalize(match) });
const empty = await recognize(noFaceImage);
report("recognize-no-face", { failure: empty.failure, matches: normalize(empty) });

// Remove the trained faces.
const deleted = await client.send(new DeleteFacesCommand({ CollectionId: collection, FaceIds: faceIds }));
report("delete", { deleted: deleted.DeletedFaces });
const after = await client.send(new DescribeCollectionCommand({ CollectionId: collection }));
report("describe-after", { faceCount: after.FaceCount });

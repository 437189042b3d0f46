// Drives spot_policy's live view as the Foxglove app does, with Foxglove's own libraries: the
// WebSocket protocol client (@foxglove/ws-protocol), the ROS 2 message-definition parser
// (@foxglove/rosmsg) and the ROS 2 CDR reader/writer (@foxglove/rosmsg2-serialization).
//
//   node drive.mjs ws://127.0.0.1:8765 [walk_seconds] [vx]
//
// Subscribes to robot_description, /tf, /tf_static and /odom, decodes them from the schemas the
// server advertises, calls the policy node's stand then walk (Service Call panel), publishes
// /cmd_vel as CDR (Teleop panel) for walk_seconds, then prints one JSON summary on stdout.
import rosmsg from "@foxglove/rosmsg";
import serialization from "@foxglove/rosmsg2-serialization";
import wsProtocol from "@foxglove/ws-protocol";
import WebSocket from "ws";

const { parse } = rosmsg; // CommonJS packages: named exports through their default export
const { MessageReader, MessageWriter } = serialization;
const { FoxgloveClient } = wsProtocol;

const [url, walkSeconds = "5", vx = "0.5"] = process.argv.slice(2);
const WANTED = ["/robot_description", "/tf", "/tf_static", "/odom"];
const summary = { frames: {}, tf_messages: 0, odom_messages: 0, services: {}, errors: [] };
const readers = new Map(); // subscription id -> [topic, MessageReader]
const channels = new Map(); // topic -> channel
const services = new Map(); // name -> id
const responses = new Map(); // call id -> resolve
let lastBody = null;
let lastOdom = null;
let walking = false;
const walkTwist = { n: 0, vx: 0, vy: 0 };
const odomHistory = [];
const bodyHistory = [];

const fail = (message) => {
  summary.errors.push(message);
  console.log(JSON.stringify(summary));
  process.exit(1);
};
setTimeout(() => fail("timed out"), 60000 + 1000 * Number(walkSeconds)).unref();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const until = async (what, predicate, ms = 20000) => {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) fail(`no ${what} within ${ms} ms`);
    await sleep(20);
  }
};

// The Foxglove SDK's server (as foxglove_bridge 3.x) names the protocol "foxglove.sdk.v1": the
// foxglove.websocket.v1 protocol under its new name, which the Foxglove app offers.
const client = new FoxgloveClient({ ws: new WebSocket(url, ["foxglove.sdk.v1"]) });
client.on("error", (error) => fail(`websocket error: ${error}`));
client.on("serverInfo", (info) => {
  summary.server = { name: info.name, capabilities: info.capabilities, encodings: info.supportedEncodings };
});
client.on("advertise", (list) => {
  for (const channel of list) {
    channels.set(channel.topic, channel);
    if (!WANTED.includes(channel.topic)) continue;
    if (channel.encoding !== "cdr" || channel.schemaEncoding !== "ros2msg") {
      fail(`${channel.topic}: ${channel.encoding}/${channel.schemaEncoding}, expected cdr/ros2msg`);
    }
    const reader = new MessageReader(parse(channel.schema, { ros2: true }));
    readers.set(client.subscribe(channel.id), [channel.topic, reader]);
  }
});
client.on("advertiseServices", (list) => {
  for (const service of list) services.set(service.name, service);
});
client.on("serviceCallResponse", (response) => {
  responses.get(response.callId)?.(response);
});
client.on("serviceCallFailure", (failure) => fail(`service call failed: ${failure.message}`));
client.on("message", ({ subscriptionId, data }) => {
  const [topic, reader] = readers.get(subscriptionId);
  const message = reader.readMessage(data);
  if (topic === "/robot_description") {
    summary.robot_description = message.data;
  } else if (topic === "/tf" || topic === "/tf_static") {
    if (topic === "/tf") summary.tf_messages += 1;
    for (const t of message.transforms) {
      summary.frames[t.child_frame_id] = t.header.frame_id;
      if (t.child_frame_id === "body") {
        const { translation: p } = t.transform;
        lastBody = { x: p.x, y: p.y, z: p.z, stamp: t.header.stamp.sec + t.header.stamp.nanosec * 1e-9 };
        bodyHistory.push(lastBody);
        if (bodyHistory.length > 5000) bodyHistory.shift();
      }
    }
  } else if (topic === "/odom") {
    summary.odom_messages += 1;
    const p = message.pose.pose.position;
    lastOdom = { x: p.x, y: p.y, z: p.z, stamp: message.header.stamp.sec + message.header.stamp.nanosec * 1e-9 };
    if (walking) {
      // The twist is in the body frame (child_frame_id): forward is forward whatever the heading.
      const v = message.twist.twist.linear;
      walkTwist.n += 1;
      walkTwist.vx += v.x;
      walkTwist.vy += v.y;
    }
    odomHistory.push(lastOdom);
    if (odomHistory.length > 5000) odomHistory.shift();
  }
});

let nextCall = 1;
// The Service Call panel: the request written, the response read, as CDR from the advertised schemas.
const call = async (name) => {
  await until(`service ${name}`, () => services.has(name));
  const service = services.get(name);
  const request = new MessageWriter(parse(service.request.schema, { ros2: true }));
  const response = new MessageReader(parse(service.response.schema, { ros2: true }));
  const callId = nextCall++;
  const answer = new Promise((resolve) => responses.set(callId, resolve));
  client.sendServiceCallRequest({
    serviceId: service.id,
    callId,
    encoding: service.request.encoding,
    data: request.writeMessage({ structure_needs_at_least_one_member: 0 }),
  });
  const { data } = await answer;
  summary.services[name] = response.readMessage(data);
};

await until("robot_description", () => summary.robot_description !== undefined);
await until("/tf_static and /tf", () => summary.frames.fl_foot && summary.frames.body);
await until("/odom", () => lastOdom !== null);
await call("/policy_node/stand");
await sleep(1500);
await call("/policy_node/walk");
summary.odom_before = lastOdom;
summary.body_before = lastBody;

// The Teleop panel: geometry_msgs/Twist as CDR, with the schema the server advertises for /cmd_vel.
const schema = channels.get("/cmd_vel").schema;
const writer = new MessageWriter(parse(schema, { ros2: true }));
const channelId = client.advertise({
  topic: "/cmd_vel",
  encoding: "cdr",
  schemaName: "geometry_msgs/msg/Twist",
  schema,
  schemaEncoding: "ros2msg",
});
const twist = { linear: { x: Number(vx), y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0 } };
const end = Date.now() + 1000 * Number(walkSeconds);
walking = true;
while (Date.now() < end) {
  client.sendMessage(channelId, writer.writeMessage(twist));
  await sleep(100);
}
walking = false;
summary.walk_twist = { n: walkTwist.n, vx: walkTwist.vx / Math.max(1, walkTwist.n), vy: walkTwist.vy / Math.max(1, walkTwist.n) };
client.unadvertise(channelId);
await sleep(300);
summary.odom_after = lastOdom;
summary.body_after = lastBody;
// /tf and /odom arrive on different channels, each thinned to the newest message per forwarding
// poll: the newest body frame that has odometry at or around its instant, with that odometry.
for (const body of [...bodyHistory].reverse()) {
  const before = odomHistory.filter((o) => o.stamp <= body.stamp).at(-1);
  const after = odomHistory.find((o) => o.stamp >= body.stamp);
  if (before && after) {
    summary.body_with_odom = { body, before, after };
    break;
  }
}
client.close();
console.log(JSON.stringify(summary));
process.exit(0);
